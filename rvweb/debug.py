"""What debug error pages may show: Django's filter, also hiding URLs and layers that carry passwords."""

import re

from django.views.debug import SafeExceptionReporterFilter


class SafeReporterFilter(SafeExceptionReporterFilter):
    hidden_settings = re.compile("API|TOKEN|KEY|SECRET|PASS|SIGNATURE|HTTP_COOKIE|URL|BROKER|CHANNEL_LAYERS|DATABASE", flags=re.I)
