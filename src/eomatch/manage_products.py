"""Seed-compatible module name for product management (see :mod:`eomatch.workflows.products`)."""

from eomatch.workflows.products import download_catalogue_products, remove_catalogue_products

__all__ = ["download_catalogue_products", "remove_catalogue_products"]
