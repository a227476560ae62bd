"""`rollback_on`: a refused update releases its row lock at once, not at teardown."""

from __future__ import annotations

import pytest
from apiflask import APIFlask
from flask.testing import FlaskClient
from sqlalchemy import text

from backend.core.conditional import PreconditionFailed
from backend.core.database import get_or_404, rollback_on
from backend.extensions import db
from backend.products.models import Product


def test_the_lock_is_released_when_the_listed_error_escapes(app: APIFlask, client: FlaskClient) -> None:
    created = client.post("/products", json={"name": "Pâté", "price": 3.5, "category": "Terrines"})
    assert created.status_code == 201, created.get_json()
    product_id = created.get_json()["id"]

    def refused_update() -> None:
        with rollback_on(PreconditionFailed):
            get_or_404(Product, product_id, "Product", for_update=True).name = "changed"
            raise PreconditionFailed("stale")

    with app.app_context():
        with pytest.raises(PreconditionFailed):
            refused_update()
        # Another connection can lock the row without waiting: the lock went with the rollback.
        with db.engine.connect() as other:
            other.execute(text("SET lock_timeout = '200ms'"))
            row = other.execute(text("SELECT name FROM products WHERE id = :id FOR UPDATE"), {"id": product_id})
            assert row.scalar_one() == "Pâté"
        db.session.remove()


def test_other_errors_pass_through_untouched(app: APIFlask) -> None:
    with app.app_context(), pytest.raises(KeyError), rollback_on(PreconditionFailed):
        raise KeyError("not listed")
