from transfers.management.job_command import KindCommand


class Command(KindCommand):
    kind = "upload_asset"
