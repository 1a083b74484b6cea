"""The admin for channels and subscriptions."""

from django.contrib import admin

from gql_pubsub.models import Channel, Subscription


@admin.register(Channel)
class ChannelAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["name", "created_at"]
    search_fields = ["name"]


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = ["user", "channel", "active", "updated_at"]
    list_filter = ["active"]
    search_fields = ["channel__name"]
    raw_id_fields = ["user", "channel"]
