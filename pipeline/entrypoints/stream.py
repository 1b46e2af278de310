"""The streaming consumer: Kafka → shared use case → PostgreSQL (+ DLQ), until SIGTERM/SIGINT."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterable

from pipeline.adapters.kafka_consumer import KafkaRecordStream
from pipeline.adapters.kafka_producer import KafkaDeadLetterQueue, make_producer
from pipeline.adapters.metrics import PrometheusStreamMetrics
from pipeline.config import DatabaseSettings, KafkaSettings, MlApiSettings, ValidationSettings
from pipeline.domain.model import Outcome, Rejection
from pipeline.domain.ports import DeadLetterSink
from pipeline.entrypoints.bootstrap import core
from pipeline.streaming import StreamOptions, StreamProcessor

logger = logging.getLogger(__name__)


class FanOutDeadLetters:
    """Dead letters go to every sink (the DLQ topic and the dead_letters table)."""

    def __init__(self, *sinks: DeadLetterSink) -> None:
        self.sinks = sinks

    def send(self, rejections: Iterable[Rejection]) -> None:
        batch = list(rejections)
        for sink in self.sinks:
            sink.send(batch)


def run_stream(
    kafka: KafkaSettings,
    db: DatabaseSettings,
    ml: MlApiSettings,
    validation: ValidationSettings,
    metrics_port: int = 0,
    stop: threading.Event | None = None,
) -> Outcome:
    """Consume until a signal (or `stop`) arrives, then finish the batch, commit and leave."""
    metrics = PrometheusStreamMetrics()
    metrics.serve(metrics_port)
    producer = make_producer(kafka)
    with core(db, ml, validation, reject_duplicate_ids=False) as built:
        stream = KafkaRecordStream(kafka)
        built.use_case.dead_letters = FanOutDeadLetters(
            built.store, KafkaDeadLetterQueue(producer, kafka.dlq_topic)
        )
        options = StreamOptions(kafka.batch_max_records, kafka.batch_max_ms / 1000)
        processor = StreamProcessor(stream, built.use_case, options, metrics)
        if stop is not None:
            processor.stop = stop
        _install_signal_handlers(processor.stop)
        logger.info("consuming %s as group %s", kafka.topic, kafka.group_id)
        try:
            total = processor.run()
        finally:
            stream.close()
            producer.flush(10)
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
