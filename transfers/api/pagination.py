"""Pages of the API's lists: 50 rows by default, `?page_size=` up to 500, `?page=` from 1."""

from rest_framework.pagination import PageNumberPagination


class Pages(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 500
