import pytest

from ndjax.studies import nominal_reference
from studies.common import STUDY


@pytest.fixture(scope="session")
def ref():
    """The nominal chip of the shared study."""
    return nominal_reference(STUDY)
