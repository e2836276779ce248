"""The dashboard that `openft serve` shows at `/`: Jinja renders each page's shell, and the page's
own small script fills it from the `/v1` JSON API with `fetch`, sending the API key that the
login page keeps in `localStorage`. So the dashboard sees exactly what the API lets that key see
(one organization's files, jobs and models) and holds no data of its own. No build step, no
CDN: the JavaScript and CSS under static/ are served as written."""

from openft.server.dashboard.routes import mount

__all__ = ["mount"]
