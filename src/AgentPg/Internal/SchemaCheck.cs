using AgentPg.Diagnostics;
using Microsoft.Extensions.Logging;
using Npgsql;

namespace AgentPg.Internal;

/// <summary>Checks once per client that the schema is at the version this library needs, so a producer (a client that is
/// never started) gets the same <see cref="AgentPgErrorCode.SchemaVersionMismatch"/> guidance as <c>StartAsync</c> instead of
/// a raw PostgreSQL error such as 42P01 (undefined table).</summary>
/// <remarks>After one successful check the cost is a field read. A failed check is not cached: the next call checks again,
/// so migrating while the application runs is picked up. A missing-object error after a successful check (the schema was
/// rolled back or dropped underneath the application) clears the cache and is translated after a fresh check.</remarks>
internal sealed class SchemaCheck(NpgsqlDataSource dataSource, string schema)
{
    private readonly AgentPgMigrator _migrator = new(dataSource, schema);
    private volatile bool _verified;

    /// <summary>StartAsync's check: migrates to <see cref="AgentPgMigrator.LatestVersion"/> when
    /// <see cref="AgentPgOptions.MigrateOnStart"/> is set, else throws <see cref="AgentPgErrorCode.SchemaVersionMismatch"/>
    /// unless the schema is there; either way producer calls need no further check.</summary>
    public async Task EnsureForStartAsync(bool migrate, ILogger logger, CancellationToken cancellationToken)
    {
        if (migrate)
        {
            var reached = await _migrator.MigrateAsync(null, cancellationToken).ConfigureAwait(false);
            Log.MigratedOnStart(logger, schema, reached);
        }
        else if (await _migrator.GetVersionAsync(cancellationToken).ConfigureAwait(false) is var version && version != AgentPgMigrator.LatestVersion)
        {
            throw Mismatch(schema, "Start", version);
        }

        _verified = true;
    }

    /// <summary>Throws <see cref="AgentPgErrorCode.SchemaVersionMismatch"/> unless the schema is at
    /// <see cref="AgentPgMigrator.LatestVersion"/>; checked on the caller's transaction when there is one, so a pool whose
    /// only connection the caller holds cannot deadlock.</summary>
    public ValueTask EnsureAsync(string operation, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
        => _verified ? ValueTask.CompletedTask : new ValueTask(CheckAsync(operation, transaction, cancellationToken));

    /// <summary>Whether a PostgreSQL error means that an AgentPg object is missing: undefined table, function, type or schema.</summary>
    public static bool IsMissingObject(Exception exception)
        => (exception as PostgresException ?? exception.InnerException as PostgresException)?.SqlState is
            PostgresErrorCodes.UndefinedTable or PostgresErrorCodes.UndefinedFunction or PostgresErrorCodes.UndefinedObject
            or PostgresErrorCodes.InvalidSchemaName;

    /// <summary>For an exception filter: clears the cached check when an AgentPg object turned out to be missing. Returns
    /// whether it did, so the caller can check again and translate.</summary>
    public bool Invalidate(Exception exception)
    {
        if (!IsMissingObject(exception))
        {
            return false;
        }

        _verified = false;
        return true;
    }

    /// <summary>After a missing-object error: checks again and returns the mismatch to throw instead, or null when the
    /// schema is fine after all (the error had another cause and is rethrown unchanged).</summary>
    public async Task<AgentPgException?> TranslateAsync(string operation, Exception exception, CancellationToken cancellationToken)
    {
        try
        {
            await CheckAsync(operation, null, cancellationToken).ConfigureAwait(false);
            return null;
        }
        catch (AgentPgException mismatch) when (mismatch.Code == AgentPgErrorCode.SchemaVersionMismatch)
        {
            return new AgentPgException(mismatch.Code, mismatch.Operation, mismatch.Message, exception) { Context = mismatch.Context };
        }
    }

    /// <summary>The exception StartAsync and every producer call throw for a schema at <paramref name="version"/>.</summary>
    public static AgentPgException Mismatch(string schema, string operation, int version)
    {
        var latest = AgentPgMigrator.LatestVersion;
        var message = version == 0
            ? $"The AgentPg schema \"{schema}\" is not migrated (version 0; this AgentPg needs version {latest}). " + AgentPgMigrator.HowToMigrate(schema)
            : version < latest
                ? $"The AgentPg schema \"{schema}\" is at version {version}; this AgentPg needs version {latest}. " + AgentPgMigrator.HowToMigrate(schema)
                : $"The AgentPg schema \"{schema}\" is at version {version}, newer than this AgentPg knows ({latest}). Upgrade the AgentPg package.";
        return new AgentPgException(AgentPgErrorCode.SchemaVersionMismatch, operation, message)
        {
            Context = new Dictionary<string, object?> { ["schema"] = schema, ["version"] = version, ["expected_version"] = latest },
        };
    }

    private async Task CheckAsync(string operation, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
    {
        int version;
        if (transaction is not null)
        {
            version = await _migrator.ReadVersionAsync(transaction.Connection!, transaction, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            version = await _migrator.GetVersionAsync(cancellationToken).ConfigureAwait(false);
        }

        if (version != AgentPgMigrator.LatestVersion)
        {
            throw Mismatch(schema, operation, version);
        }

        _verified = true;
    }
}
