"""E-mail components (upstream `email` block). Upstream's aliyun.email is a cloud API; `smtp`
sends through any SMTP server."""

FACTORIES: dict[str, str] = {
    "smtp": "layotto.components.email.smtp:SmtpEmail",
}
