"""The lab: what tests, load tests and benchmarks use to exercise the product, never the product itself.

Network namespaces and impairable links (netns, impair), Janus in a namespace (janus_ns), the app with its
media plane in the lab (serve), synthetic sites (bots, rtpfast: aiortc), the WebSocket protocol client
(client), the load tests (loadtest + loadrun: ``giaoban loadtest media``; loadbrief: ``giaoban loadtest
briefing``; measure: what both share) and a throwaway PostgreSQL (pg).

Installed with the ``lab`` extra (``pip install "giaoban[lab]"``: aiortc). Nothing outside this package
imports it except ``giaoban/cli.py``, inside its load-test command (tests and bench/ may import it).
"""
