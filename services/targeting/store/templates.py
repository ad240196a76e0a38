"""Saved templates (`targeting.templates`), versioned, and the content a run starts with."""

import asyncpg

from shared.db import Connection
from shared.events import (
    Channel,
    Content,
    CreateBroadcast,
    SaveTemplate,
    TemplateSummary,
    TemplateVersion,
)


async def resolve_content(
    connection: Connection, definition: CreateBroadcast
) -> tuple[Content, TemplateVersion | None] | None:
    """The content a run of this broadcast would send now; None when its template is gone."""
    if definition.template_id is None:
        assert definition.content is not None, "a definition has content or a template"
        return definition.content, None
    template = await latest_template(connection, definition.tenant_id, definition.template_id)
    if template is None:
        return None
    version, content = template
    return content, TemplateVersion(template_id=definition.template_id, version=version)


async def save_template(pool: asyncpg.Pool, command: SaveTemplate) -> int:
    """The version this request saved: a new one, or the one it saved before (a replay)."""
    async with pool.acquire() as connection, connection.transaction():
        # Versions of one template are numbered one after the other, even under concurrency.
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtext('targeting-template'), hashtext($1))",
            f"{command.tenant_id}|{command.template_id}",
        )
        earlier: int | None = await connection.fetchval(
            "SELECT version FROM targeting.templates WHERE tenant_id = $1 AND request_id = $2",
            command.tenant_id,
            command.request_id,
        )
        if earlier is not None:
            return earlier
        version: int = await connection.fetchval(
            """INSERT INTO targeting.templates
                   (tenant_id, template_id, version, name, content, request_id)
               SELECT $1, $2, coalesce(max(version), 0) + 1, $3, $4, $5
               FROM targeting.templates WHERE tenant_id = $1 AND template_id = $2
               RETURNING version""",
            command.tenant_id,
            command.template_id,
            command.name,
            command.content.model_dump(mode="json"),
            command.request_id,
        )
        return version


async def delete_template(pool: asyncpg.Pool, tenant_id: str, template_id: str) -> bool:
    """False when the tenant has no such template (never saved, or deleted before)."""
    status = await pool.execute(
        "UPDATE targeting.templates SET deleted = true "
        "WHERE tenant_id = $1 AND template_id = $2 AND NOT deleted",
        tenant_id,
        template_id,
    )
    return status != "UPDATE 0"


async def template_deleted(pool: asyncpg.Pool, tenant_id: str, template_id: str) -> bool:
    """True when the template was saved once and is deleted now."""
    deleted: bool | None = await pool.fetchval(
        "SELECT bool_and(deleted) FROM targeting.templates WHERE tenant_id = $1 "
        "AND template_id = $2",
        tenant_id,
        template_id,
    )
    return bool(deleted)


async def latest_template(
    connection: Connection, tenant_id: str, template_id: str
) -> tuple[int, Content] | None:
    row = await connection.fetchrow(
        """SELECT version, content FROM targeting.templates
           WHERE tenant_id = $1 AND template_id = $2 AND NOT deleted
           ORDER BY version DESC LIMIT 1""",
        tenant_id,
        template_id,
    )
    return None if row is None else (row["version"], Content.model_validate(row["content"]))


# An answer must fit in one record: the first TEMPLATES_LIMIT templates by id.
TEMPLATES_LIMIT = 1000


async def list_templates(pool: asyncpg.Pool, tenant_id: str) -> list[TemplateSummary]:
    rows = await pool.fetch(
        """SELECT DISTINCT ON (template_id) template_id, name, version, content, saved_at
           FROM targeting.templates WHERE tenant_id = $1 AND NOT deleted
           ORDER BY template_id, version DESC LIMIT $2""",
        tenant_id,
        TEMPLATES_LIMIT,
    )
    summaries = []
    for row in rows:
        content = Content.model_validate(row["content"])
        channels: list[Channel] = [c for c in ("email", "sms") if getattr(content, c)]
        languages = sorted({*content.email, *content.sms})
        summaries.append(
            TemplateSummary(
                template_id=row["template_id"],
                name=row["name"],
                version=row["version"],
                channels=channels,
                languages=languages,
                saved_at=row["saved_at"],
            )
        )
    return summaries
