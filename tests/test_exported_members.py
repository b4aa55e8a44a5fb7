"""The curated public API: what ``import eomatch`` offers, and the seed-compatible modules."""

from __future__ import annotations

import pytest

import eomatch


def test_public_names():
    assert sorted(eomatch.__all__) == sorted(
        [
            "Crossover",
            "CrossoverParams",
            "EOMatchContext",
            "EomatchError",
            "MatchupCatalogue",
            "Satellite",
            "SatelliteRegistry",
            "Sensor",
            "__version__",
            "find_crossovers",
        ]
    )
    for name in eomatch.__all__:
        assert getattr(eomatch, name) is not None


def test_seed_compatible_modules_point_at_the_same_code():
    from eomatch.find_and_catalogue import FindSummary as SeedSummary
    from eomatch.find_and_catalogue import FoundCatalogue, find_and_catalogue
    from eomatch.io.catalogue import MatchupCatalogue
    from eomatch.manage_products import download_catalogue_products, remove_catalogue_products
    from eomatch.mu_stac import MatchupCatalogue as SeedCatalogue
    from eomatch.workflows import find, products

    # the seed module's class adds download_products (a use case io must not import)
    assert MatchupCatalogue is eomatch.MatchupCatalogue
    assert issubclass(SeedCatalogue, MatchupCatalogue)
    assert issubclass(FoundCatalogue, SeedCatalogue)  # its result has download_products
    assert SeedCatalogue.get_events is MatchupCatalogue.get_events
    # the seed entry point runs the use case and returns the catalogue (test_seed_python_api)
    assert find_and_catalogue.__module__ == "eomatch.find_and_catalogue"
    assert SeedSummary is find.FindSummary
    assert download_catalogue_products is products.download_catalogue_products
    assert remove_catalogue_products is products.remove_catalogue_products


def test_public_names_are_the_defining_modules_objects():
    from eomatch.context import EOMatchContext
    from eomatch.core.satellites import SatelliteRegistry
    from eomatch.errors import EomatchError
    from eomatch.workflows.crossovers import find_crossovers

    assert eomatch.EOMatchContext is EOMatchContext
    assert eomatch.SatelliteRegistry is SatelliteRegistry
    assert eomatch.EomatchError is EomatchError
    assert eomatch.find_crossovers is find_crossovers
    assert set(eomatch.__all__) <= set(dir(eomatch))


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'find_and_catalog'"):
        _ = eomatch.find_and_catalog  # type: ignore[attr-defined]
    assert not hasattr(eomatch, "build_registry")


def test_star_import_gives_every_public_name():
    namespace: dict[str, object] = {}
    exec("from eomatch import *", namespace)
    assert set(eomatch.__all__) <= set(namespace)
