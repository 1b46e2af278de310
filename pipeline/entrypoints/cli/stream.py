"""`python -m pipeline stream`: the consumer loop until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading

from pipeline import bootstrap
from pipeline.config import DatabaseSettings, KafkaSettings, MlApiSettings, ValidationSettings
from pipeline.domain.model import Outcome
from pipeline.entrypoints.cli.runtime import tune_gc

logger = logging.getLogger(__name__)


def run_stream(
    kafka: KafkaSettings,
    db: DatabaseSettings,
    ml: MlApiSettings,
    validation: ValidationSettings,
    metrics_port: int = 0,
    stop: threading.Event | None = None,
) -> Outcome:
    """Consume until a signal (or `stop`) arrives, then finish the batch, commit and leave."""
    with bootstrap.stream_app(kafka, db, ml, validation, metrics_port) as processor:
        if stop is not None:
            processor.stop = stop
        _install_signal_handlers(processor.stop)
        tune_gc()
        logger.info("consuming %s as group %s", kafka.topic, kafka.group_id)
        total = processor.run()
    logger.info("consumer stopped: %s", total.as_dict())
    return total


def _install_signal_handlers(stop: threading.Event) -> None:
    if threading.current_thread() is not threading.main_thread():
        return

    def handle(signum: int, _frame: object) -> None:
        logger.info("signal %s: finishing the current batch, then leaving the group", signum)
        stop.set()

    signal.signal(signal.SIGTERM, handle)
    signal.signal(signal.SIGINT, handle)
