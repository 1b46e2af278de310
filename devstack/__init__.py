"""The development stack, not in the product wheel: broker, supervisord stack, Airflow home,
launchers, data generator."""
