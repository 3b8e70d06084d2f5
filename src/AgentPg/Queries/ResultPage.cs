namespace AgentPg;

/// <summary>One page of a keyset-paginated list, newest first.</summary>
/// <typeparam name="T">The listed record.</typeparam>
/// <param name="Items">The rows of this page, at most the query's <c>Limit</c>.</param>
/// <param name="NextCursor">Pass it as the next query's <c>Cursor</c> to get the following page; <see langword="null"/> on
/// the last page. Opaque: its format may change between versions.</param>
/// <remarks>Keyset pagination: rows inserted while a caller pages through a list never shift a page, so no row is skipped
/// or shown twice, and a deep page costs the same as the first.</remarks>
public sealed record ResultPage<T>(IReadOnlyList<T> Items, string? NextCursor);
