from pathlib import Path

import pytest

from shared.db import migration_files

ROOT = Path(__file__).resolve().parents[2]


def test_every_service_ships_well_formed_migrations() -> None:
    for service in ("targeting", "composer", "dispatcher", "tracker"):
        files = migration_files(ROOT / "services" / service / "migrations")
        assert files and files[0][0] == 1


def test_a_gap_in_numbering_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "003_c.sql").write_text("")
    with pytest.raises(ValueError, match="without gaps"):
        migration_files(tmp_path)


def test_a_misnamed_file_is_an_error_not_a_silent_skip(tmp_path: Path) -> None:
    (tmp_path / "001_a.sql").write_text("")
    (tmp_path / "2-b.sql").write_text("")
    with pytest.raises(ValueError, match="NNN_lower_snake"):
        migration_files(tmp_path)
