from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.index, name="index"),
    path("destinations/create/", views.destination_create_view, name="destination_create"),
    path(
        "destinations/<uuid:destination_id>/",
        views.destination_detail,
        name="destination_detail",
    ),
    path(
        "destinations/<uuid:destination_id>/edit/",
        views.destination_edit,
        name="destination_edit",
    ),
    path(
        "destinations/<uuid:destination_id>/pause/",
        views.destination_pause,
        name="destination_pause",
    ),
    path(
        "destinations/<uuid:destination_id>/activate/",
        views.destination_activate,
        name="destination_activate",
    ),
    path(
        "destinations/<uuid:destination_id>/rotate-secret/",
        views.destination_rotate_secret_view,
        name="destination_rotate_secret",
    ),
    path(
        "destinations/<uuid:destination_id>/delete/",
        views.destination_delete_view,
        name="destination_delete",
    ),
]
