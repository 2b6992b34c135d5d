from django.core.management.base import BaseCommand, CommandError, CommandParser

from transfers.farm import UnsupportedAccount
from transfers.farm.simulate import render_run, render_start
from transfers.farm_events import Actor, EventInvalid
from transfers.models import FarmAccount


class Command(BaseCommand):
    help = (
        "Render on a local farm account: create a task (with --children, a parent with one child task per layer) "
        "and write its frames into the output area over time, posting each as a farm event."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--account", type=int, required=True, help="the farm account's id")
        parser.add_argument("--frames", type=int, default=50, help="frames per task (default 50)")
        parser.add_argument("--interval", type=float, default=0.2, help="seconds between frames (default 0.2)")
        parser.add_argument("--children", type=int, default=0, help="child tasks (render layers); 0: one task")
        parser.add_argument("--scene", default="shot", help="the scene name (the output folder is <task_id>_<scene>)")
        parser.add_argument("--frame-size", type=int, default=64 * 1024, help="bytes per frame (default 65536)")

    def handle(self, *args: object, **options: object) -> None:
        frames, interval, children, size = (options["frames"], options["interval"], options["children"], options["frame_size"])
        assert isinstance(frames, int) and isinstance(interval, float) and isinstance(children, int) and isinstance(size, int)
        if not 1 <= frames <= 100_000 or not 0 <= children <= 100 or interval < 0 or not 1 <= size <= 1 << 30:
            raise CommandError("--frames 1..100000, --children 0..100, --interval >= 0, --frame-size 1..1 GiB")
        account = FarmAccount.objects.defer("access_key").filter(pk=options["account"]).first()
        if account is None:
            raise CommandError(f"no farm account {options['account']}")
        actor = Actor(user=None, request_id="simulate_render")
        try:
            plan = render_start(
                account=account, scene=str(options["scene"]), frames=frames, children=children, actor=actor, interval=interval
            )
        except (EventInvalid, UnsupportedAccount) as exc:
            raise CommandError(str(exc)) from None
        plan = type(plan)(plan.account_id, plan.task_id, plan.frames, plan.interval, frame_size=size)
        self.stdout.write(f"task {plan.task_id} created on farm account {account.name!r}; rendering {frames} frames")
        written = render_run(plan, actor=actor)
        self.stdout.write(f"task {plan.task_id} finished: {written} frames written")
