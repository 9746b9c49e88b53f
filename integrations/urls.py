from django.urls import path

from integrations import views

app_name = "integrations"

urlpatterns = [
    path("", views.index, name="index"),
    path("live/", views.live_fragment, name="live"),
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
    path(
        "destinations/<uuid:destination_id>/deliveries/",
        views.destination_deliveries_fragment,
        name="destination_deliveries",
    ),
    path(
        "destinations/<uuid:destination_id>/send-test/",
        views.destination_send_test_view,
        name="destination_send_test",
    ),
    path(
        "destinations/<uuid:destination_id>/resend-failed/",
        views.destination_resend_failed_view,
        name="destination_resend_failed",
    ),
    path(
        "destinations/<uuid:destination_id>/verify-signature/",
        views.destination_verify_signature,
        name="destination_verify_signature",
    ),
    path("deliveries/<int:delivery_id>/", views.delivery_detail, name="delivery_detail"),
    path(
        "deliveries/<int:delivery_id>/resend/",
        views.delivery_resend_view,
        name="delivery_resend",
    ),
    path(
        "test-sends/<int:test_delivery_id>/",
        views.destination_test_result,
        name="destination_test_result",
    ),
    path("resend-jobs/<int:job_id>/", views.resend_job_status, name="resend_job_status"),
]
