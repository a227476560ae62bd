"""HTTP routes of /products."""

from __future__ import annotations

from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, request, url_for

from backend.core.auth import WRITE_SECURITY, require_scope
from backend.core.errors import AUTH_ERRORS, BODY_ERRORS, COMMON_ERRORS
from backend.core.pagination import pagination_headers
from backend.products import service
from backend.products.schemas import ProductIn, ProductOut, ProductPatch, ProductQuery

bp = APIBlueprint("products", __name__, url_prefix="/products", tag="Products")


def _dump(product: Any) -> ProductOut:
    # @bp.output serialises a model instance without validating it a second time.
    return ProductOut.model_validate(product)


@bp.get("")
@bp.input(ProductQuery, location="query", arg_name="query")
@bp.output(list[ProductOut])  # type: ignore[arg-type]
@bp.doc(summary="List products (JSON array; X-Total-Count and Link headers)", responses=[*COMMON_ERRORS])
def list_products(query: ProductQuery) -> tuple[list[ProductOut], int, dict[str, str]]:
    products, total = service.cached_page(query.category, query.limit, query.offset)
    headers = pagination_headers(request.path, query.model_dump(), total, query.limit, query.offset)
    return [_dump(product) for product in products], 200, headers


@bp.get("/<int:product_id>")
@bp.output(ProductOut)
@bp.doc(summary="Get one product", responses=[404, *COMMON_ERRORS])
def get_product(product_id: int) -> Response:
    # The cached bytes are ProductOut's JSON already: sent as they are, not decoded and serialised again.
    return current_app.response_class(service.cached_product_json(product_id), mimetype="application/json")


@bp.post("")
@require_scope("products:write")
@bp.input(ProductIn, arg_name="body")
@bp.output(ProductOut, status_code=201)
@bp.doc(summary="Create a product", responses=[*BODY_ERRORS], security=WRITE_SECURITY)
def create_product(body: ProductIn) -> tuple[ProductOut, int, dict[str, str]]:
    product = service.create_product(body.model_dump())
    return _dump(product), 201, {"Location": url_for("products.get_product", product_id=product.id)}


@bp.put("/<int:product_id>")
@require_scope("products:write")
@bp.input(ProductIn, arg_name="body")
@bp.output(ProductOut)
@bp.doc(summary="Replace a product", responses=[404, *BODY_ERRORS], security=WRITE_SECURITY)
def replace_product(product_id: int, body: ProductIn) -> ProductOut:
    return _dump(service.update_product(product_id, body.model_dump()))


@bp.patch("/<int:product_id>")
@require_scope("products:write")
@bp.input(ProductPatch, arg_name="body")
@bp.output(ProductOut)
@bp.doc(summary="Update some fields of a product", responses=[404, *BODY_ERRORS], security=WRITE_SECURITY)
def patch_product(product_id: int, body: ProductPatch) -> ProductOut:
    return _dump(service.update_product(product_id, body.changes()))


@bp.delete("/<int:product_id>")
@require_scope("products:write")
@bp.output({}, status_code=204)
@bp.doc(summary="Delete a product", responses=[404, *AUTH_ERRORS], security=WRITE_SECURITY)
def delete_product(product_id: int) -> tuple[str, int]:
    service.delete_product(product_id)
    return "", 204
