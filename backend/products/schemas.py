"""Pydantic schemas of the products API."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from backend.core.validation import NO_NUL, NOT_BLANK, UtcDatetime, no_nul, not_blank, optional_not_null

Name = Annotated[str, Field(min_length=1, max_length=200, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)]
Category = Annotated[str, Field(min_length=1, max_length=100, json_schema_extra=NOT_BLANK), AfterValidator(not_blank)]
# strict: no "12" strings, no booleans; allow_inf_nan=False: no NaN/Infinity.
Price = Annotated[float, Field(ge=0, strict=True, allow_inf_nan=False)]


class ProductIn(BaseModel):
    """Body of POST and PUT: every field required."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"example": {"name": "Foie gras entier", "price": 89.9, "category": "Foie gras"}},
    )

    name: Name
    price: Price
    category: Category


class ProductPatch(BaseModel):
    """Body of PATCH: any subset of the fields, at least one."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"minProperties": 1})

    # Omitted means unchanged; an explicit null is refused, so the documented schema does not admit null.
    name: Name | None = Field(None, json_schema_extra=optional_not_null)
    price: Price | None = Field(None, json_schema_extra=optional_not_null)
    category: Category | None = Field(None, json_schema_extra=optional_not_null)

    @model_validator(mode="after")
    def _at_least_one_non_null(self) -> ProductPatch:
        if not self.model_fields_set:
            raise ValueError("at least one of name, price, category is required")
        nulls = sorted(name for name in self.model_fields_set if getattr(self, name) is None)
        if nulls:
            raise ValueError(f"fields cannot be null: {', '.join(nulls)}")
        return self

    def changes(self) -> dict[str, object]:
        """Only the fields the client sent."""
        return {name: getattr(self, name) for name in self.model_fields_set}


class ProductOut(BaseModel):
    """A stored product."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    price: float
    category: str
    version: int = Field(description="Grows by one with every update; the ETag header is this number quoted")
    created_at: UtcDatetime
    updated_at: UtcDatetime


class ProductPage(BaseModel):
    """A page of `GET /products` and the total matching its filter, as the cache keeps it (the body is `items`)."""

    items: list[ProductOut]
    total: int


class ProductQuery(BaseModel):
    """Query string of GET /products."""

    model_config = ConfigDict(extra="forbid")

    category: (
        Annotated[str, Field(min_length=1, max_length=100, json_schema_extra=NO_NUL), AfterValidator(no_nul)] | None
    ) = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    offset: Annotated[int, Field(ge=0, le=2_147_483_647)] = 0
