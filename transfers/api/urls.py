from rest_framework.routers import DefaultRouter

from transfers.api.views import FarmAccountViewSet, ManifestViewSet, TransferJobViewSet

app_name = "api"
router = DefaultRouter()
router.register("accounts", FarmAccountViewSet, basename="account")
router.register("manifests", ManifestViewSet, basename="manifest")
router.register("jobs", TransferJobViewSet, basename="job")

urlpatterns = router.urls
