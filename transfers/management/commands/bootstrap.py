from django.core.management.base import BaseCommand

from rvweb.env import env_str
from transfers import demo


class Command(BaseCommand):
    help = "Make sure the admin account, the demo local farm account, its demo manifest and demo render exist."

    def handle(self, *args: object, **options: object) -> None:
        name, password = demo.admin_ensure(password=env_str("RVWEB_ADMIN_PASSWORD", "") or None)
        if password and not env_str("RVWEB_ADMIN_PASSWORD", ""):
            self.stdout.write(
                self.style.WARNING(
                    f"Admin account created: {name} / {password}  (shown once; change it with `manage.py changepassword {name}`)"
                )
            )
        elif password:
            self.stdout.write(f"Admin account {name}: password set from RVWEB_ADMIN_PASSWORD.")
        else:
            self.stdout.write(f"Admin account {name} exists (its password was printed when it was created).")
        manifest = demo.demo_ensure()
        self.stdout.write(f"Demo manifest: {manifest.name!r}, {manifest.entry_count} files, farm account {manifest.account}.")
        task = demo.demo_render_ensure()
        self.stdout.write(
            f"Demo render: task {task.task_id}, {task.frames.count()} frames in {task.output_folder}/ of the output area."
        )
