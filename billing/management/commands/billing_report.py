import json

from django.core.management.base import BaseCommand, CommandError

from accounts.models import Organization
from billing import selectors


class Command(BaseCommand):
    help = "Print spend for a month (CSV) or the estimator's accuracy over completed jobs (--accuracy)."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organization slug (default: the only one)")
        parser.add_argument("--month", help="YYYY-MM (default: this month)")
        parser.add_argument("--accuracy", action="store_true")

    def handle(self, *args, org=None, month=None, accuracy=False, **options):
        organization = None
        if org:
            organization = Organization.objects.filter(slug=org).first()
            if organization is None:
                raise CommandError(f"no organization with slug {org!r}")
        if accuracy:
            report = selectors.estimate_accuracy(organization=organization)
            self.stdout.write(json.dumps({k: v for k, v in report.items() if k != "jobs"}, indent=2))
            return
        if organization is None:
            orgs = list(Organization.objects.all()[:2])
            if len(orgs) != 1:
                raise CommandError("name the organization with --org")
            organization = orgs[0]
        self.stdout.write(selectors.spend_csv(organization=organization, month=selectors.parse_month(month)), ending="")
