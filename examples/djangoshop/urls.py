from django.urls import path

from . import views

urlpatterns = [
    path("", views.home),
    path("order", views.order),
    path("upload", views.upload),
    path("stream", views.stream),
    path("files/<str:name>", views.files),
    path("client", views.client),
]
