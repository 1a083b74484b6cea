from django.contrib import admin

from .models import Correspondence, Message

admin.site.register(Correspondence)
admin.site.register(Message)
