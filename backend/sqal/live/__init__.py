"""Live: `/ws/dashboard/` (stored samples and figures pushed to every dashboard) and the `/dashboard` page."""
