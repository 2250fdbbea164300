"""The AWS parts around SES: boto3 clients with one-line errors (`clients`), and `newsletter setup
aws` (`setup`), which creates or repairs the SNS topic, the SQS queues and the SES configuration
set and receipt rule that carry events to `newsletter sync`."""
