"""Product business logic: plain functions over the SQLAlchemy session, no Flask request objects."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Row, bindparam, func, select

from backend.core.conditional import IfMatch, PreconditionFailed
from backend.core.database import get_or_404, not_found, rollback_on
from backend.extensions import cache, db
from backend.products.models import Product

CACHE = "products"

SAMPLE_PRODUCTS: Sequence[Mapping[str, Any]] = (
    {"name": "Foie gras de canard entier IGP Sud-Ouest 300 g", "price": 42.5, "category": "Foie gras"},
    {"name": "Bloc de foie gras de canard 200 g", "price": 19.9, "category": "Foie gras"},
    {"name": "Foie gras d'oie entier mi-cuit 180 g", "price": 54.0, "category": "Foie gras"},
    {"name": "Lobe de foie gras cru extra 550 g", "price": 38.75, "category": "Foie gras cru"},
    {"name": "Magret de canard séché 150 g", "price": 12.3, "category": "Charcuterie"},
    {"name": "Confit de canard 4 cuisses", "price": 24.9, "category": "Conserves"},
    {"name": "Rillettes de canard au foie gras 180 g", "price": 8.6, "category": "Conserves"},
    {"name": "Mousse de foie de canard 200 g", "price": 6.2, "category": "Conserves"},
    {"name": "Confit d'oignons au Sauternes 110 g", "price": 5.4, "category": "Accompagnements"},
    {"name": "Coffret dégustation Sud-Ouest", "price": 69.0, "category": "Coffrets"},
)


# One product's row by id, in Core: a read needs no session, identity map or ORM object.
_PRODUCT_ROW = select(*Product.__table__.c).where(Product.__table__.c.id == bindparam("id"))


def list_products(category: str | None, limit: int, offset: int) -> tuple[list[Product], int]:
    """A page of products ordered by id, and the total matching the filter."""
    query = select(Product)
    count = select(func.count()).select_from(Product)
    if category is not None:
        query = query.where(Product.category == category)
        count = count.where(Product.category == category)
    total = db.session.execute(count).scalar_one()
    rows = db.session.execute(query.order_by(Product.id).limit(limit).offset(offset)).scalars().all()
    return list(rows), total


def product_row(product_id: int) -> Row[Any]:
    """The product's row from one Core SELECT on a pooled connection (a third of the CPU of a session `get`, which
    a cache miss would otherwise pay for a single read); NotFound if absent."""
    with db.engine.connect() as connection:
        row = connection.execute(_PRODUCT_ROW, {"id": product_id}).first()
    if row is None:
        raise not_found("Product", product_id)
    return row


def get_product(product_id: int) -> Product:
    """The product, or NotFound."""
    return get_or_404(Product, product_id, "Product")


def create_product(fields: Mapping[str, Any]) -> Product:
    """Insert a product and commit."""
    product = Product(**fields)
    db.session.add(product)
    db.session.commit()
    cache.invalidate(CACHE)
    return product


def update_product(product_id: int, fields: Mapping[str, Any], precondition: IfMatch | None = None) -> Product:
    """Apply `fields` to the product (locked for the update), bump its version and commit.

    PreconditionFailed (nothing written) when `precondition` does not match the locked row's version.
    """
    product = get_or_404(Product, product_id, "Product", for_update=True)
    if precondition is not None:
        with rollback_on(PreconditionFailed):
            precondition.check(product.version)
    for name, value in fields.items():
        setattr(product, name, value)
    product.version += 1
    db.session.commit()
    cache.invalidate(CACHE)
    return product


def delete_product(product_id: int) -> None:
    """Delete the product and commit; NotFound if absent."""
    product = get_product(product_id)
    db.session.delete(product)
    db.session.commit()
    cache.invalidate(CACHE)


def seed_sample_products() -> int:
    """Insert the sample catalogue once; return how many rows were added (0 when already seeded)."""
    existing = set(db.session.execute(select(Product.name)).scalars())
    missing = [Product(**item) for item in SAMPLE_PRODUCTS if item["name"] not in existing]
    db.session.add_all(missing)
    db.session.commit()
    if missing:
        cache.invalidate(CACHE)
    return len(missing)
