import sys

from django.conf import settings
from django.core.management.base import BaseCommand

from rvweb.env import env_int, env_str
from rvweb.stack import run_stack


class Command(BaseCommand):
    help = "Start embedded Redis (when REDIS_URL is unset), daphne and a Celery worker; Ctrl-C stops them all."

    def handle(self, *args: object, **options: object) -> None:
        code = run_stack(
            data_dir=settings.DATA_DIR,
            embedded_redis=settings.EMBEDDED_REDIS,
            bind=env_str("RVWEB_BIND", "127.0.0.1"),
            port=env_int("RVWEB_PORT", 8000, minimum=1, maximum=65535),
            queue=settings.CELERY_TASK_DEFAULT_QUEUE,
            concurrency=env_int("RVWEB_WORKER_CONCURRENCY", 2, minimum=1, maximum=64),
            say=lambda line: self.stdout.write(line),
        )
        sys.exit(code)
