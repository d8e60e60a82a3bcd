"""Reaching the Hugging Face Hub, or building timm models offline when it cannot be reached."""

from __future__ import annotations

import contextlib
import os


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub (``$HF_ENDPOINT``) answers a TCP connection.

    Behind a proxy the direct connection says nothing, so the Hub is then taken
    as reachable (huggingface_hub goes through the proxy itself).
    """
    import socket
    from urllib.parse import urlparse
    from urllib.request import getproxies

    if getproxies():
        return True
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    port = url.port or (80 if url.scheme == "http" else 443)
    try:
        socket.create_connection((url.hostname or "huggingface.co", port), timeout=timeout).close()
    except OSError:
        return False
    return True


@contextlib.contextmanager
def hub_offline_when_unreachable():
    """huggingface_hub's offline mode for the duration of one model build, when the Hub
    cannot be reached: timm then loads cached weights, or fails at once, instead of
    retrying for ~50 s with a warning per retry."""
    try:
        from huggingface_hub import constants
    except ImportError:  # pragma: no cover - timm always brings it
        yield
        return
    if getattr(constants, "HF_HUB_OFFLINE", False) or hub_reachable():
        yield
        return
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = saved
