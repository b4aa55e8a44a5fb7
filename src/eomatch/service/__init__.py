"""The central catalogue service: the STAC APIs, the gateway and the browser.

Behind the ``service`` extra: without it, importing this package raises a one-line
:class:`~eomatch.errors.MissingExtraError` naming the install command.
"""

from eomatch.extras import require_extra

require_extra("service", "the catalogue service")
