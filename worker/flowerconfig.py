"""Flower settings (``celery -A worker flower --conf=worker/flowerconfig.py``)."""

from shared.settings import get_settings

_settings = get_settings()

basic_auth = [f"{_settings.flower_user}:{_settings.flower_password}"]
address = "127.0.0.1"
port = 5555
persistent = False
purge_offline_workers = 300
