using Npgsql;
using NpgsqlTypes;

namespace AgentPg.Storage;

/// <summary>Typed positional parameters ($1, $2 …). Explicit types let prepared statements keep one plan source
/// and keep NULLs typed.</summary>
internal static class P
{
    public static NpgsqlParameter Text(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Text, Value = (object?)value ?? DBNull.Value };

    public static NpgsqlParameter Json(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Json, Value = (object?)value ?? DBNull.Value };

    public static NpgsqlParameter Jsonb(string? value) => new() { NpgsqlDbType = NpgsqlDbType.Jsonb, Value = (object?)value ?? DBNull.Value };

    public static NpgsqlParameter Uuid(Guid value) => new NpgsqlParameter<Guid> { NpgsqlDbType = NpgsqlDbType.Uuid, TypedValue = value };

    public static NpgsqlParameter Uuid(Guid? value) => new() { NpgsqlDbType = NpgsqlDbType.Uuid, Value = value.HasValue ? value.Value : DBNull.Value };

    public static NpgsqlParameter Int(int value) => new NpgsqlParameter<int> { NpgsqlDbType = NpgsqlDbType.Integer, TypedValue = value };

    public static NpgsqlParameter Int(int? value) => new() { NpgsqlDbType = NpgsqlDbType.Integer, Value = value.HasValue ? value.Value : DBNull.Value };

    public static NpgsqlParameter Long(long value) => new NpgsqlParameter<long> { NpgsqlDbType = NpgsqlDbType.Bigint, TypedValue = value };

    public static NpgsqlParameter Long(long? value) => new() { NpgsqlDbType = NpgsqlDbType.Bigint, Value = value.HasValue ? value.Value : DBNull.Value };

    public static NpgsqlParameter Double(double? value) => new() { NpgsqlDbType = NpgsqlDbType.Double, Value = value.HasValue ? value.Value : DBNull.Value };

    public static NpgsqlParameter Bool(bool value) => new NpgsqlParameter<bool> { NpgsqlDbType = NpgsqlDbType.Boolean, TypedValue = value };

    public static NpgsqlParameter TimestampTz(DateTimeOffset? value) => new() { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = value.HasValue ? value.Value : DBNull.Value };

    public static NpgsqlParameter Interval(TimeSpan value) => new NpgsqlParameter<TimeSpan> { NpgsqlDbType = NpgsqlDbType.Interval, TypedValue = value };

    public static NpgsqlParameter TextArray(IReadOnlyList<string>? value)
        => new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Text, Value = value is null ? DBNull.Value : value.ToArray() };

    /// <summary>An array of an AgentPg enum type, sent as an array literal of unknown type so PostgreSQL takes the type from
    /// the statement's cast (<c>$n::schema.agentpg_run_state[]</c>): the planner then sees the enum values themselves and can
    /// estimate them and match partial indexes (a <c>text[]</c> cast to the enum array is not folded: enum input is only
    /// stable). The values are the enum's database names (<c>DbEnums.ToDb</c>), never free text.</summary>
    public static NpgsqlParameter EnumArray(IReadOnlyList<string>? values)
        => new() { NpgsqlDbType = NpgsqlDbType.Unknown, Value = values is null ? DBNull.Value : "{" + string.Join(',', values) + "}" };

    public static NpgsqlParameter UuidArrayOrNull(IReadOnlyList<Guid>? value)
        => new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = value is null ? DBNull.Value : value.ToArray() };

    public static NpgsqlParameter Timestamp(DateTimeOffset? value)
        => new() { NpgsqlDbType = NpgsqlDbType.TimestampTz, Value = value.HasValue ? value.Value.ToUniversalTime() : DBNull.Value };

    public static NpgsqlParameter BoolOrNull(bool? value) => new() { NpgsqlDbType = NpgsqlDbType.Boolean, Value = value.HasValue ? value.Value : DBNull.Value };

    public static NpgsqlParameter UuidArray(IReadOnlyList<Guid> value)
        => new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Uuid, Value = value.ToArray() };

    public static NpgsqlParameter JsonbArray(IReadOnlyList<string?> value)
        => new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Jsonb, Value = value.Select(v => (object?)v ?? DBNull.Value).ToArray() };

    public static NpgsqlParameter IntArray(IReadOnlyList<int> value)
        => new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Integer, Value = value.ToArray() };

    public static NpgsqlParameter BoolArray(IReadOnlyList<bool> value)
        => new() { NpgsqlDbType = NpgsqlDbType.Array | NpgsqlDbType.Boolean, Value = value.ToArray() };
}
