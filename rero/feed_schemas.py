"""What the calendar-feed routes answer, for the OpenAPI document."""

from __future__ import annotations

from marshmallow import Schema, fields


class FeedMade(Schema):
    url = fields.String(
        required=True,
        metadata={"description": "The private feed URL: shown once, a credential of its own",
                  "example": "https://rero.example.edu/calendar/Q0b5kIh7x2v4kM0Xo3dWQyYw1pB9eZtS8aLrNfUgHcE.ics"},
    )  # fmt: skip
    created_at = fields.String(required=True, metadata={"format": "date-time"})


class ResourceFeedMade(FeedMade):
    resource = fields.String(required=True)


class FeedRevoked(Schema):
    revoked = fields.Boolean(
        required=True, metadata={"description": "Whether there was a live feed to revoke"}
    )
