"""The sender process (``jobyard sender``, the Procfile's ``sender``): one asyncio loop
sending webhook messages (:class:`shared.webhooks.sender.Sender`) until SIGTERM or
SIGINT, then finishing the requests in flight (each ends within the send timeout) and
recording their outcomes. Run as many as the backlog needs: they share the work safely."""

from __future__ import annotations

import asyncio
import logging
import signal

from shared import tracing
from shared.logs import configure_logging
from shared.settings import get_settings
from shared.webhooks.sender import Sender

log = logging.getLogger(__name__)


async def serve() -> None:
    sender = Sender()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, sender.stop)
    await sender.run()
    log.info("webhook sender stopped after %d attempts", sender.sent)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    tracing.setup("sender")  # when OTEL_EXPORTER_OTLP_ENDPOINT is set
    asyncio.run(serve())


if __name__ == "__main__":
    main()
