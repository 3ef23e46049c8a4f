from django.urls import path

from . import attestation_views as views

app_name = "attest"

urlpatterns = [
    path("review/<int:campaign_id>/<int:reviewer_id>/", views.review, name="review"),
    path("campaigns/", views.campaign_list, name="campaign_list"),
    path("campaigns/<int:pk>/", views.campaign_detail, name="campaign_detail"),
    path("campaigns/<int:pk>/export.csv", views.campaign_export, name="campaign_export"),
    path("transfers/", views.transfer_list, name="transfer_list"),
    path("transfers/<int:pk>/", views.transfer_detail, name="transfer_detail"),
    path("connectors/<int:connector_id>/hand-over/", views.transfer_offer_view, name="transfer_offer"),
    path("identities/<int:pk>/offboard/", views.identity_offboard_view, name="identity_offboard"),
]
