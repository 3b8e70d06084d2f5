namespace AgentPg;

/// <summary>A file of a memory store (<see cref="AgentMemory"/>), as Claude's memory tool sees it under <c>/memories</c>.</summary>
public sealed record MemoryFile
{
    /// <summary>Gets the path, for example <c>/memories/preferences.md</c>.</summary>
    public required string Path { get; init; }

    /// <summary>Gets the content.</summary>
    public required string Content { get; init; }

    /// <summary>Gets the size of <see cref="Content"/> in UTF-8 bytes.</summary>
    public int SizeBytes { get; init; }

    /// <summary>Gets when the file was created (a rename keeps it).</summary>
    public DateTimeOffset CreatedAt { get; init; }

    /// <summary>Gets when the file was last changed.</summary>
    public DateTimeOffset UpdatedAt { get; init; }
}
