from django.urls import path

from . import api

urlpatterns = [
    path("evaluation", api.evaluation, name="access-evaluation"),
    path("evaluations", api.evaluations, name="access-evaluations"),
    path("search/subject", api.search_subject, name="access-search-subject"),
    path("search/resource", api.search_resource, name="access-search-resource"),
    path("search/action", api.search_action, name="access-search-action"),
]
