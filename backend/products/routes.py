"""HTTP routes of /products."""

from __future__ import annotations

from functools import partial
from typing import Any

from apiflask import APIBlueprint
from flask import Response, current_app, request, url_for

from backend.base.errors import AUTH_ERRORS, BODY_ERRORS, COMMON_ERRORS
from backend.core.auth import WRITE_SECURITY, require_scope
from backend.core.cache import make_key, wire_json
from backend.core.conditional import CONDITIONAL_ERRORS, conditional, etag, if_match
from backend.core.contract import sends
from backend.core.idempotency import idempotent
from backend.core.pagination import pagination_headers
from backend.extensions import cache
from backend.products import service
from backend.products.schemas import ProductIn, ProductOut, ProductPage, ProductPatch, ProductQuery

bp = APIBlueprint("products", __name__, url_prefix="/products", tag="Products")


def _dump(product: Any) -> ProductOut:
    # @bp.output serialises a model instance without validating it a second time.
    return ProductOut.model_validate(product)


def _with_etag(product: Any) -> tuple[ProductOut, int, dict[str, str]]:
    return _dump(product), 200, {"ETag": etag(product.version)}


@bp.get("")
@sends(200, "X-Total-Count", "Link")
@bp.input(ProductQuery, location="query", arg_name="query")
@bp.output(list[ProductOut])  # type: ignore[arg-type]
@bp.doc(
    operation_id="listProducts",
    summary="List products (JSON array; X-Total-Count and Link headers)",
    responses=[*COMMON_ERRORS],
)
def list_products(query: ProductQuery) -> tuple[list[ProductOut], int, dict[str, str]]:
    def load() -> dict[str, Any]:
        products, total = service.list_products(query.category, query.limit, query.offset)
        return {"items": products, "total": total}

    key = make_key("list", query.category, query.limit, query.offset)
    page = cache.cached_model(service.CACHE, key, ProductPage, load)
    headers = pagination_headers(request.path, query.model_dump(), page.total, query.limit, query.offset)
    return page.items, 200, headers


@bp.get("/<int:product_id>")
@bp.output(ProductOut)
@bp.doc(operation_id="getProduct", summary="Get one product", responses=[404, *COMMON_ERRORS])
@sends(200, "ETag")
def get_product(product_id: int) -> Response:
    # Sent as ProductOut's compact JSON (as the cache stores it), not through @bp.output: the body stays the same
    # bytes whether the entry was a hit or a miss.
    load = partial(service.product_row, product_id)
    product = cache.cached_model(service.CACHE, make_key("item", product_id), ProductOut, load)
    response = current_app.response_class(wire_json(ProductOut, product), mimetype="application/json")
    response.headers["ETag"] = etag(product.version)
    return response


@bp.post("")
@require_scope("products:write")
@idempotent
@sends(201, "Location", "ETag")
@bp.input(ProductIn, arg_name="body")
@bp.output(ProductOut, status_code=201)
@bp.doc(
    operation_id="createProduct",
    summary="Create a product (idempotent with an Idempotency-Key header)",
    responses=[409, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
def create_product(body: ProductIn) -> tuple[ProductOut, int, dict[str, str]]:
    product = service.create_product(body.model_dump())
    location = url_for("products.get_product", product_id=product.id)
    return _dump(product), 201, {"Location": location, "ETag": etag(product.version)}


@bp.put("/<int:product_id>")
@require_scope("products:write")
@bp.input(ProductIn, arg_name="body")
@bp.output(ProductOut)
@bp.doc(
    operation_id="replaceProduct",
    summary="Replace a product (conditional with If-Match)",
    responses=[404, *CONDITIONAL_ERRORS, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
@conditional
def replace_product(product_id: int, body: ProductIn) -> tuple[ProductOut, int, dict[str, str]]:
    return _with_etag(service.update_product(product_id, body.model_dump(), if_match()))


@bp.patch("/<int:product_id>")
@require_scope("products:write")
@bp.input(ProductPatch, arg_name="body")
@bp.output(ProductOut)
@bp.doc(
    operation_id="updateProduct",
    summary="Update some fields of a product (conditional with If-Match)",
    responses=[404, *CONDITIONAL_ERRORS, *BODY_ERRORS],
    security=WRITE_SECURITY,
)
@conditional
def patch_product(product_id: int, body: ProductPatch) -> tuple[ProductOut, int, dict[str, str]]:
    return _with_etag(service.update_product(product_id, body.changes(), if_match()))


@bp.delete("/<int:product_id>")
@require_scope("products:write")
@bp.output({}, status_code=204)
@bp.doc(
    operation_id="deleteProduct", summary="Delete a product", responses=[404, *AUTH_ERRORS], security=WRITE_SECURITY
)
def delete_product(product_id: int) -> tuple[str, int]:
    service.delete_product(product_id)
    return "", 204
