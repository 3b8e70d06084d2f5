using System.Globalization;
using Npgsql;

namespace AgentPg.Storage;

/// <summary>The migrator's own statements (see <see cref="AgentPgMigrator"/>): the advisory lock, the schema's existence,
/// ownership and version. Each runs on the migrator's connection, in its transaction when there is one.</summary>
internal sealed class MigrationSql
{
    /// <summary>The comment on a schema the migrator created (only such a schema is dropped by a rollback to 0).</summary>
    public const string CreatedByComment = "created by AgentPgMigrator";

    // First key of the two-key advisory lock: "AgPg". The second is hashtext(schema name).
    private const int LockClass = 0x41675067;

    private const string Lock = "SELECT pg_advisory_xact_lock($1, hashtext($2))";
    private const string SchemaExists = "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)";
    private const string TableExists = "SELECT to_regclass($1) IS NOT NULL";
    private const string SchemaIsOurs = "SELECT coalesce(obj_description(oid, 'pg_namespace') = $2, FALSE) FROM pg_namespace WHERE nspname = $1";

    private readonly SchemaName _schema;
    private readonly string _createSchema;
    private readonly string _maxVersion;
    private readonly string _setSearchPath;
    private readonly string _dropSchema;

    public MigrationSql(SchemaName s)
    {
        _schema = s;
        _createSchema = $"CREATE SCHEMA {s.Quoted}; COMMENT ON SCHEMA {s.Quoted} IS '{CreatedByComment}'";
        _maxVersion = $"SELECT coalesce(max(version), 0) FROM {s.Quoted}.agentpg_migrations";
        // The migration files are schema-agnostic: they create everything in the first schema of the search_path.
        _setSearchPath = $"SET LOCAL search_path TO {s.Quoted}";
        // RESTRICT refuses when anything else lives in the schema; that is the "nothing else is left" check.
        _dropSchema = $"DROP SCHEMA {s.Quoted} RESTRICT";
    }

    /// <summary>Takes the schema's transaction-level advisory lock: instances migrating together apply each file once.</summary>
    public Task LockAsync(NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => Db.Command(transaction.Connection!, transaction, Lock, P.Int(LockClass), P.Text(_schema.Name)).ExecuteAsync(cancellationToken);

    /// <summary>Creates the schema, marked as created by the migrator, unless it exists.</summary>
    public async Task EnsureSchemaAsync(NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        if (!await ScalarAsync<bool>(transaction.Connection!, transaction, SchemaExists, cancellationToken, P.Text(_schema.Name)).ConfigureAwait(false))
        {
            await Db.Command(transaction.Connection!, transaction, _createSchema).ExecuteAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    /// <summary>The highest applied migration; 0 when the schema or its migration table does not exist.</summary>
    public async Task<int> ReadVersionAsync(NpgsqlConnection connection, NpgsqlTransaction? transaction, CancellationToken cancellationToken)
        => await ScalarAsync<bool>(connection, transaction, TableExists, cancellationToken, P.Text($"{_schema.Quoted}.agentpg_migrations")).ConfigureAwait(false)
            ? await ScalarAsync<int>(connection, transaction, _maxVersion, cancellationToken).ConfigureAwait(false)
            : 0;

    /// <summary>Puts the schema first on the search_path for the rest of the transaction (the migration scripts use it).</summary>
    public Task SetSearchPathAsync(NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => Db.Command(transaction.Connection!, transaction, _setSearchPath).ExecuteAsync(cancellationToken);

    /// <summary>Runs a migration script.</summary>
    public static Task ExecuteScriptAsync(NpgsqlTransaction transaction, string script, CancellationToken cancellationToken)
        => Db.Command(transaction.Connection!, transaction, script).ExecuteAsync(cancellationToken);

    /// <summary>Whether the migrator created the schema (its comment says so).</summary>
    public Task<bool> IsOursAsync(NpgsqlTransaction transaction, CancellationToken cancellationToken)
        => ScalarAsync<bool>(transaction.Connection!, transaction, SchemaIsOurs, cancellationToken, P.Text(_schema.Name), P.Text(CreatedByComment));

    /// <summary>Drops the schema if nothing is left in it; false (and nothing changed) otherwise.</summary>
    public async Task<bool> DropSchemaIfEmptyAsync(NpgsqlTransaction transaction, CancellationToken cancellationToken)
    {
        await transaction.SaveAsync("drop_schema", cancellationToken).ConfigureAwait(false);
        try
        {
            await Db.Command(transaction.Connection!, transaction, _dropSchema).ExecuteAsync(cancellationToken).ConfigureAwait(false);
            await transaction.ReleaseAsync("drop_schema", cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (PostgresException ex) when (ex.SqlState == PostgresErrorCodes.DependentObjectsStillExist)
        {
            await transaction.RollbackAsync("drop_schema", cancellationToken).ConfigureAwait(false);
            return false;
        }
    }

    private static async Task<T> ScalarAsync<T>(NpgsqlConnection connection, NpgsqlTransaction? transaction, string sql, CancellationToken cancellationToken,
        params NpgsqlParameter[] parameters)
        => (T)Convert.ChangeType((await Db.Command(connection, transaction, sql, parameters).ScalarAsync(cancellationToken).ConfigureAwait(false))!, typeof(T),
            CultureInfo.InvariantCulture);
}
