"""The browser console (预约 · 调度 · 指挥 · 监管): a dependency-free single-page app.

``web.console.mount_console(app)`` serves it at ``/`` with Leaflet from the xstatic-leaflet
pip package — no CDN, no build step, works offline.
"""
