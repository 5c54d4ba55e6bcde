"""``python -m imgproc.tools.apihealth [URL]``: the API container's health check (docker-compose.yml).

Healthy (exit 0) while the API answers ``GET /health`` with 200; 503 (Redis unreachable), no answer
or a timeout is unhealthy (exit 1), said in one line. A module rather than ``python -c "..."``:
podman's Docker-compatible API splits a check's arguments at their spaces.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request

URL = "http://127.0.0.1:8000/health"


def check(url: str = URL, timeout: float = 5) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            print(f"healthy: {url} answered {answer.status}")
            return 0
    except urllib.error.HTTPError as exc:
        print(f"unhealthy: {url} answered {exc.code}")
    except OSError as exc:
        print(f"unhealthy: {url}: {exc}")
    return 1


if __name__ == "__main__":
    sys.exit(check(*sys.argv[1:2]))
