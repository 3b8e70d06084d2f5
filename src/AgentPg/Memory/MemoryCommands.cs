using System.Globalization;
using System.Text;
using System.Text.Json;

namespace AgentPg.Memory;

/// <summary>What a memory command changes in its store: written by <see cref="MemoryTool"/> in the command's transaction.</summary>
internal abstract record MemoryChange
{
    /// <summary>Creates the file or replaces its content.</summary>
    public sealed record Write(string Path, string Content) : MemoryChange;

    /// <summary>Deletes the file, or every file under the directory.</summary>
    public sealed record Delete(string Path) : MemoryChange;

    /// <summary>Moves the file, or every file under the directory.</summary>
    public sealed record Rename(string OldPath, string NewPath) : MemoryChange;
}

/// <summary>The outcome of a memory command: the text Claude gets (an error or not) and the change to make, if any.</summary>
internal sealed record MemoryOutcome(string Text, bool IsError, MemoryChange? Change = null)
{
    public static MemoryOutcome Error(string text) => new(text, true);
}

/// <summary>Claude's memory commands (<c>memory_20250818</c>) over one store's files, as the protocol describes them (commands,
/// input fields, result and error texts: see docs/memory.md for the sources). Pure: it reads the store's files as they were
/// when the store was locked and returns what to change.</summary>
internal sealed class MemoryCommands(IReadOnlyList<MemoryFile> files, AgentMemory limits)
{
    private const int LineNumberWidth = 6;

    // The path and text fields each command requires (insert also takes insert_line).
    private static readonly Dictionary<string, (string[] Paths, string[] Texts)> s_fields = new(StringComparer.Ordinal)
    {
        ["view"] = (["path"], []),
        ["create"] = (["path"], ["file_text"]),
        ["str_replace"] = (["path"], ["old_str", "new_str"]),
        ["insert"] = (["path"], ["insert_text"]),
        ["delete"] = (["path"], []),
        ["rename"] = (["old_path", "new_path"], []),
    };

    // Looked up once per entry of a listing and per ancestor of a path: a scan of the files each time made a listing of a
    // large store quadratic, with the store locked.
    private readonly Dictionary<string, MemoryFile> _byPath = ByPath(files);

    public MemoryOutcome Execute(JsonElement input)
    {
        if (CommandProblem(input) is { } problem)
        {
            return MemoryOutcome.Error(problem);
        }

        return String(input, "command") switch
        {
            "view" => View(input),
            "create" => Create(input),
            "str_replace" => StrReplace(input),
            "insert" => Insert(input),
            "delete" => Delete(input),
            _ => Rename(input),
        };
    }

    /// <summary>What makes <paramref name="input"/> not a memory command that can run — not an object, an unknown command, a
    /// missing or bad path, text or line — as the tool error would say it; null for a well-formed command (whether it succeeds
    /// depends on the store's files when it runs). Checks an approver's edit of a command.</summary>
    public static string? FormProblem(JsonElement input)
    {
        if (CommandProblem(input) is { } problem)
        {
            return problem;
        }

        var command = String(input, "command")!;
        var (paths, texts) = s_fields[command];
        foreach (var name in paths)
        {
            if (!TryPath(input, name, command, out _, out var error))
            {
                return error.Text;
            }
        }

        foreach (var name in texts)
        {
            if (!TryText(input, name, command, out _, out var error))
            {
                return error.Text;
            }
        }

        return command == "insert" && !TryLine(input, out _) ? InvalidLine : null;
    }

    private static string? CommandProblem(JsonElement input)
    {
        if (input.ValueKind != JsonValueKind.Object)
        {
            return "The memory tool's input must be an object with a `command`.";
        }

        return String(input, "command") switch
        {
            null => "Missing required parameter `command`: one of view, create, str_replace, insert, delete, rename.",
            var command when !s_fields.ContainsKey(command) => $"Unknown command: {command}. Use one of view, create, str_replace, insert, delete, rename.",
            _ => null,
        };
    }

    private MemoryOutcome View(JsonElement input)
    {
        if (!TryPath(input, "path", "view", out var path, out var error))
        {
            return error;
        }

        if (File(path) is { } file)
        {
            var lines = file.Content.Split('\n');
            var start = 1;
            var end = lines.Length;
            if (input.TryGetProperty("view_range", out var range) && range.ValueKind != JsonValueKind.Null)
            {
                if (range.ValueKind != JsonValueKind.Array || range.GetArrayLength() != 2
                    || !range[0].TryGetInt32(out start) || !range[1].TryGetInt32(out end))
                {
                    return MemoryOutcome.Error("Invalid `view_range`: it should be a list of two integers, [start, end] (end -1 = to the last line).");
                }

                if (start < 1 || start > lines.Length)
                {
                    return MemoryOutcome.Error(Invariant($"Invalid `view_range`: [{start}, {end}]. Its first element `{start}` should be within the range of lines of the file: [1, {lines.Length}]"));
                }

                end = end == -1 ? lines.Length : Math.Min(end, lines.Length);
                if (end < start)
                {
                    return MemoryOutcome.Error(Invariant($"Invalid `view_range`: [{start}, {end}]. Its second element should be at least its first, or -1 for the last line."));
                }
            }

            var text = new StringBuilder($"Here's the content of {path} with line numbers:");
            for (var n = start; n <= end; n++)
            {
                text.Append('\n').Append(LineNumber(n)).Append('\t').Append(lines[n - 1]);
            }

            return new(text.ToString(), false);
        }

        if (!IsDirectory(path))
        {
            return MemoryOutcome.Error($"The path {path} does not exist. Please provide a valid path.");
        }

        // Up to 2 levels below the directory, each directory followed by what is in it, names in ordinal order; hidden names
        // (starting with '.') and what is under them left out. A directory's size is the size of the files under it (hidden ones
        // included). One pass over the files.
        var prefix = path == MemoryPaths.Root ? MemoryPaths.Root + "/" : path + "/";
        var total = 0L;
        var entries = new SortedDictionary<string, long>(StringComparer.Ordinal);
        foreach (var f in files.Where(f => f.Path.StartsWith(prefix, StringComparison.Ordinal)))
        {
            total += f.SizeBytes;
            var segments = f.Path[prefix.Length..].Split('/');
            if (segments[0].StartsWith('.'))
            {
                continue;
            }

            if (segments.Length == 1)
            {
                entries[segments[0]] = f.SizeBytes;
                continue;
            }

            entries[segments[0] + "/"] = entries.GetValueOrDefault(segments[0] + "/") + f.SizeBytes;
            if (!segments[1].StartsWith('.'))
            {
                var entry = segments[0] + "/" + (segments.Length == 2 ? segments[1] : segments[1] + "/");
                entries[entry] = entries.GetValueOrDefault(entry) + f.SizeBytes;
            }
        }

        var listing = new StringBuilder($"Here're the files and directories up to 2 levels deep in {path}, excluding hidden items:");
        listing.Append('\n').Append(Size(total)).Append('\t').Append(path);
        foreach (var (entry, size) in entries)
        {
            listing.Append('\n').Append(Size(size)).Append('\t').Append(prefix).Append(entry);
        }

        return new(listing.ToString(), false);
    }

    private MemoryOutcome Create(JsonElement input)
    {
        if (!TryPath(input, "path", "create", out var path, out var error) || !TryText(input, "file_text", "create", out var text, out error))
        {
            return error;
        }

        if (path == MemoryPaths.Root)
        {
            return MemoryOutcome.Error("Cannot create a file at /memories: it is the memory directory itself. Name a file under it, for example /memories/notes.md.");
        }

        if (File(path) is not null)
        {
            return MemoryOutcome.Error($"File {path} already exists");
        }

        if (IsDirectory(path))
        {
            return MemoryOutcome.Error($"The path {path} is a directory.");
        }

        if (FileAncestor(path) is { } ancestor)
        {
            return MemoryOutcome.Error($"Cannot create {path}: {ancestor} is a file, not a directory.");
        }

        return CheckLimits(path, text, null) ?? new($"File created successfully at: {path}", false, new MemoryChange.Write(path, text));
    }

    private MemoryOutcome StrReplace(JsonElement input)
    {
        if (!TryPath(input, "path", "str_replace", out var path, out var error)
            || !TryText(input, "old_str", "str_replace", out var oldStr, out error)
            || !TryText(input, "new_str", "str_replace", out var newStr, out error))
        {
            return error;
        }

        if (File(path) is not { } file)
        {
            return IsDirectory(path)
                ? MemoryOutcome.Error($"The path {path} is not a file.")
                : MemoryOutcome.Error($"The path {path} does not exist. Please provide a valid path.");
        }

        if (oldStr.Length == 0)
        {
            return MemoryOutcome.Error("No replacement was performed: `old_str` is empty. Give the exact text to replace.");
        }

        var content = file.Content;
        var positions = new List<int>();
        for (var at = content.IndexOf(oldStr, StringComparison.Ordinal); at >= 0; at = content.IndexOf(oldStr, at + oldStr.Length, StringComparison.Ordinal))
        {
            positions.Add(at);
        }

        if (positions.Count == 0)
        {
            return MemoryOutcome.Error($"No replacement was performed, old_str `{oldStr}` did not appear verbatim in {path}.");
        }

        if (positions.Count > 1)
        {
            var lines = string.Join(", ", positions.Select(p => (LineOf(content, p) + 1).ToString(CultureInfo.InvariantCulture)));
            return MemoryOutcome.Error($"No replacement was performed. Multiple occurrences of old_str `{oldStr}` in lines: {lines}. Please ensure it is unique");
        }

        var updated = string.Concat(content.AsSpan(0, positions[0]), newStr, content.AsSpan(positions[0] + oldStr.Length));
        if (CheckLimits(path, updated, file) is { } tooLarge)
        {
            return tooLarge;
        }

        // The changed lines with two lines of context either side.
        var changed = LineOf(content, positions[0]);
        var newLines = updated.Split('\n');
        var from = Math.Max(0, changed - 2);
        var to = Math.Min(newLines.Length, changed + newStr.Count(c => c == '\n') + 3);
        var snippet = new StringBuilder("The memory file has been edited. Here is the snippet showing the change (with line numbers):");
        for (var i = from; i < to; i++)
        {
            snippet.Append('\n').Append(LineNumber(i + 1)).Append('\t').Append(newLines[i]);
        }

        return new(snippet.ToString(), false, new MemoryChange.Write(path, updated));
    }

    private MemoryOutcome Insert(JsonElement input)
    {
        if (!TryPath(input, "path", "insert", out var path, out var error) || !TryText(input, "insert_text", "insert", out var text, out error))
        {
            return error;
        }

        if (!TryLine(input, out var line))
        {
            return MemoryOutcome.Error(InvalidLine);
        }

        if (File(path) is not { } file)
        {
            return IsDirectory(path)
                ? MemoryOutcome.Error($"The path {path} is not a file.")
                : MemoryOutcome.Error($"The path {path} does not exist. Please provide a valid path.");
        }

        var content = file.Content;
        var body = content.EndsWith('\n') ? content[..^1] : content;
        var lines = content.Length == 0 ? [] : body.Split('\n').ToList();
        if (line < 0 || line > lines.Count)
        {
            return MemoryOutcome.Error(Invariant($"Invalid `insert_line` parameter: {line}. It should be within the range [0, {lines.Count}]."));
        }

        lines.Insert(line, text.TrimEnd('\n'));
        var updated = string.Join('\n', lines) + "\n";
        return CheckLimits(path, updated, file) ?? new($"The file {path} has been edited.", false, new MemoryChange.Write(path, updated));
    }

    private MemoryOutcome Delete(JsonElement input)
    {
        if (!TryPath(input, "path", "delete", out var path, out var error))
        {
            return error;
        }

        if (path == MemoryPaths.Root)
        {
            return MemoryOutcome.Error("Cannot delete the /memories directory itself");
        }

        return File(path) is not null || IsDirectory(path)
            ? new($"Successfully deleted {path}", false, new MemoryChange.Delete(path))
            : MemoryOutcome.Error($"The path {path} does not exist");
    }

    private MemoryOutcome Rename(JsonElement input)
    {
        if (!TryPath(input, "old_path", "rename", out var oldPath, out var error) || !TryPath(input, "new_path", "rename", out var newPath, out error))
        {
            return error;
        }

        if (oldPath == MemoryPaths.Root || newPath == MemoryPaths.Root)
        {
            return MemoryOutcome.Error("Cannot rename the /memories directory itself; rename the files or directories under it.");
        }

        var isFile = File(oldPath) is not null;
        if (!isFile && !IsDirectory(oldPath))
        {
            return MemoryOutcome.Error($"The path {oldPath} does not exist");
        }

        if (File(newPath) is not null || IsDirectory(newPath))
        {
            return MemoryOutcome.Error($"The destination {newPath} already exists");
        }

        if (newPath.StartsWith(oldPath + "/", StringComparison.Ordinal))
        {
            return MemoryOutcome.Error($"Cannot move {oldPath} into itself ({newPath}).");
        }

        if (FileAncestor(newPath) is { } ancestor)
        {
            return MemoryOutcome.Error($"Cannot rename to {newPath}: {ancestor} is a file, not a directory.");
        }

        // Paths count towards the store's size.
        var moved = files.Where(f => f.Path == oldPath || f.Path.StartsWith(oldPath + "/", StringComparison.Ordinal)).ToList();
        var growth = moved.Count * (Utf8(newPath) - Utf8(oldPath));
        if (growth > 0 && StoreSize() + growth > limits.MaxStoreBytes)
        {
            return StoreFull(StoreSize() + growth);
        }

        return new($"Successfully renamed {oldPath} to {newPath}", false, new MemoryChange.Rename(oldPath, newPath));
    }

    /// <summary>The tool error when <paramref name="content"/> at <paramref name="path"/> (replacing <paramref name="existing"/>)
    /// breaks a limit; null when it fits.</summary>
    private MemoryOutcome? CheckLimits(string path, string content, MemoryFile? existing)
    {
        if (content.Contains('\0', StringComparison.Ordinal))
        {
            return MemoryOutcome.Error("The text contains the character U+0000, which a memory file cannot hold; remove it. Nothing was changed.");
        }

        var bytes = Utf8(content);
        if (bytes > limits.MaxFileBytes)
        {
            return MemoryOutcome.Error(Invariant(
                $"Nothing was changed: {path} would be {bytes} bytes, and a memory file may hold at most {limits.MaxFileBytes} bytes. Keep it shorter, or split it into several files."));
        }

        var total = StoreSize() - (existing is null ? 0 : Utf8(existing.Path) + existing.SizeBytes) + Utf8(path) + bytes;
        return total > limits.MaxStoreBytes && total > StoreSize() ? StoreFull(total) : null;
    }

    private MemoryOutcome StoreFull(long total) => MemoryOutcome.Error(Invariant(
        $"Nothing was changed: the memory would hold {total} bytes, and it may hold at most {limits.MaxStoreBytes} bytes (paths and contents). Delete or shorten files you no longer need first."));

    private long StoreSize() => files.Sum(f => (long)Utf8(f.Path) + f.SizeBytes);

    private MemoryFile? File(string path) => _byPath.GetValueOrDefault(path);

    private static Dictionary<string, MemoryFile> ByPath(IReadOnlyList<MemoryFile> files)
    {
        var byPath = new Dictionary<string, MemoryFile>(files.Count, StringComparer.Ordinal);
        foreach (var file in files)
        {
            byPath.TryAdd(file.Path, file);
        }

        return byPath;
    }

    private bool IsDirectory(string path)
        => path == MemoryPaths.Root || files.Any(f => f.Path.StartsWith(path + "/", StringComparison.Ordinal));

    /// <summary>The nearest ancestor of <paramref name="path"/> that is a file, if any.</summary>
    private string? FileAncestor(string path)
    {
        for (var slash = path.LastIndexOf('/'); slash > MemoryPaths.Root.Length; slash = path.LastIndexOf('/', slash - 1))
        {
            if (File(path[..slash]) is not null)
            {
                return path[..slash];
            }
        }

        return null;
    }

    private static bool TryPath(JsonElement input, string name, string command, out string path, out MemoryOutcome error)
    {
        path = "";
        error = null!;
        if (String(input, name) is not { } raw)
        {
            error = MemoryOutcome.Error($"Missing required parameter `{name}` for command `{command}`: a path under /memories.");
            return false;
        }

        if (MemoryPaths.Normalize(raw, out var problem) is not { } normalized)
        {
            error = MemoryOutcome.Error(problem!);
            return false;
        }

        path = normalized;
        return true;
    }

    private static bool TryText(JsonElement input, string name, string command, out string text, out MemoryOutcome error)
    {
        text = String(input, name) ?? "";
        error = null!;
        if (!input.TryGetProperty(name, out var value) || value.ValueKind != JsonValueKind.String)
        {
            error = MemoryOutcome.Error($"Missing required parameter `{name}` for command `{command}`: a string.");
            return false;
        }

        return true;
    }

    private const string InvalidLine =
        "Missing or invalid parameter `insert_line` for command `insert`: the number of the line to insert after (0 = at the start).";

    private static bool TryLine(JsonElement input, out int line)
    {
        line = 0;
        return input.TryGetProperty("insert_line", out var element) && element.ValueKind == JsonValueKind.Number && element.TryGetInt32(out line);
    }

    private static string? String(JsonElement input, string name)
        => input.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static int LineOf(string content, int position) => content.AsSpan(0, position).Count('\n');

    private static string LineNumber(int n) => n.ToString(CultureInfo.InvariantCulture).PadLeft(LineNumberWidth);

    private static int Utf8(string text) => Encoding.UTF8.GetByteCount(text);

    /// <summary>A size as the memory tool's directory listing shows it: <c>0B</c>, <c>512B</c>, <c>1.5K</c>, <c>2M</c>.</summary>
    internal static string Size(long bytes)
    {
        if (bytes <= 0)
        {
            return "0B";
        }

        string[] units = ["B", "K", "M", "G"];
        var unit = Math.Min((int)(Math.Log2(bytes) / 10), units.Length - 1);
        var value = bytes / Math.Pow(1024, unit);
        return value == Math.Floor(value)
            ? ((long)value).ToString(CultureInfo.InvariantCulture) + units[unit]
            : value.ToString("0.0", CultureInfo.InvariantCulture) + units[unit];
    }

    private static string Invariant(FormattableString s) => s.ToString(CultureInfo.InvariantCulture);
}
