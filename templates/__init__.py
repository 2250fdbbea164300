# Installed as the package `newsletter.bundled_templates` (see pyproject.toml) so that the email
# templates under templates/email/ ship inside the wheel.
