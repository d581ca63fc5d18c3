"""A task the broker-fault test loads into a real worker (`celery worker -I tests.reliability.rel_tasks`):
it appends its number to a file, so the test can count what ran, and how often."""
import os
import time

from celery import shared_task


@shared_task(name="rel.record", ignore_result=True)
def record(path: str, n: int, work_s: float = 0.02):
    time.sleep(work_s)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{n}\n".encode())
    finally:
        os.close(fd)
