"""On-call data from PagerDuty and Opsgenie: who is on call, and whether an incident is open."""
