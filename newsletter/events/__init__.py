"""The feedback loop: SES events, inbound unsubscribe mail and our own events, from the SQS queue
into the list (`newsletter sync`), and our own events onto the queue (`put_event`).

    from newsletter.events import put_event, SubscribeConfirmed
    put_event(config, SubscribeConfirmed("reader@example.com", "Reader"))
"""

from .model import EditionChanged, Event, InboundMail, MailEvent, SubscribeConfirmed, Unsubscribe
from .queue import EventQueue, put_event

__all__ = ["EditionChanged", "Event", "EventQueue", "InboundMail", "MailEvent", "SubscribeConfirmed", "Unsubscribe", "put_event"]
