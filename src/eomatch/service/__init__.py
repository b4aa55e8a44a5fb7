"""The central catalogue service: the STAC APIs, the gateway and the browser."""
