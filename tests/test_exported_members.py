"""The curated public API: what ``import eomatch`` offers, and the seed-compatible modules."""

from __future__ import annotations

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
    from eomatch.find_and_catalogue import find_and_catalogue
    from eomatch.io.catalogue import MatchupCatalogue
    from eomatch.manage_products import download_catalogue_products, remove_catalogue_products
    from eomatch.mu_stac import MatchupCatalogue as SeedCatalogue
    from eomatch.workflows import find, products

    assert SeedCatalogue is MatchupCatalogue is eomatch.MatchupCatalogue
    assert find_and_catalogue is find.find_and_catalogue
    assert download_catalogue_products is products.download_catalogue_products
    assert remove_catalogue_products is products.remove_catalogue_products
