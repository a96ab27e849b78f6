"""The opener for every HTTP call Latchkey makes with a secret of its own (the audit
webhook's signature, PagerDuty's token, Opsgenie's key): urllib's usual handlers (proxies
from the environment included) minus redirects, which urllib would follow with the secret
to wherever they point. A redirect raises HTTPError with its 3xx status instead."""

from __future__ import annotations

import urllib.request


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # type: ignore[no-untyped-def]
        return None


NO_REDIRECTS = urllib.request.build_opener(_NoRedirects())
