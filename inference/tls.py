"""How Watchkeeper's HTTP clients check the servers they talk to (reference models, their metrics, Slack).

Certificates are always verified and host names checked; a site with its own CA gives that CA's PEM file
(``ca_file``), which then replaces the system's trusted roots for that client. There is no switch to turn
verification off.
"""

from __future__ import annotations

import ssl


def client_context(ca_file: str | None = None) -> ssl.SSLContext:
    """A verifying client TLS context: the system's roots, or only those in ``ca_file``.

    >>> ctx = client_context()
    >>> ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    True
    """
    context = ssl.create_default_context(cafile=ca_file) if ca_file else ssl.create_default_context()
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    return context
