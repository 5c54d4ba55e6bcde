"""The web page (issue 11): vendors submit photos and watch their jobs; operators watch the service.

views.py     the /ui/ blueprint: sign-in, the vendor's page, a batch's page, the operator's page;
             a Content-Security-Policy on every page
templates/   Jinja (autoescaped), no inline script or style
static/      plain CSS and JavaScript, no build step; the JS reads the JSON API with the session cookie

The page has no API of its own: its scripts call /api/image-queue/... as any
client does, authenticated by the session cookie of ``imgproc.api.sessions``.
"""

from .views import bp

__all__ = ["bp"]
