using System.Reflection;
using System.Runtime.CompilerServices;
using System.Text;

namespace AgentPg.Tests.PublicApi;

/// <summary>Lists the public surface of an assembly, one sorted line per type and member, in a C#-like notation: what a
/// user can see and call, including nullability, default values and the members protected types expose.</summary>
internal static class PublicApiListing
{
    private static readonly NullabilityInfoContext s_nullability = new();

    /// <summary>Each exported type's declaration, sorted by name, followed by its visible members, sorted and indented.</summary>
    public static IReadOnlyList<string> Of(Assembly assembly)
    {
        var lines = new List<string>();
        foreach (var type in assembly.GetExportedTypes().OrderBy(TypeName, StringComparer.Ordinal))
        {
            lines.Add(TypeDeclaration(type));
            var members = new List<string>();
            if (type.IsEnum)
            {
                foreach (var field in type.GetFields(BindingFlags.Public | BindingFlags.Static))
                {
                    members.Add($"{field.Name} = {Literal(Convert.ChangeType(field.GetRawConstantValue(), Enum.GetUnderlyingType(type), System.Globalization.CultureInfo.InvariantCulture))}");
                }
            }
            else if (!typeof(Delegate).IsAssignableFrom(type))
            {
                const BindingFlags all = BindingFlags.Public | BindingFlags.NonPublic | BindingFlags.Instance | BindingFlags.Static | BindingFlags.DeclaredOnly;
                members.AddRange(type.GetMembers(all).Select(m => Member(type, m)).OfType<string>());
            }

            members.Sort(StringComparer.Ordinal);
            lines.AddRange(members.Select(m => "  " + m));
        }

        return lines;
    }

    private static string? Member(Type type, MemberInfo member)
    {
        switch (member)
        {
            case ConstructorInfo c when Visible(c):
                return $"{Access(c)}{(c.IsStatic ? "static " : "")}.ctor({Parameters(c.GetParameters())})";
            case MethodInfo m when Visible(m) && !m.IsSpecialName && !IsCompilerGenerated(m):
                return $"{Access(m)}{Modifiers(type, m)}{ReturnType(m)} {m.Name}{GenericArguments(m)}({Parameters(m.GetParameters())})";
            case MethodInfo m when Visible(m) && m.IsSpecialName && m.Name.StartsWith("op_", StringComparison.Ordinal):
                return $"{Access(m)}static {ReturnType(m)} {m.Name}({Parameters(m.GetParameters())})";
            case PropertyInfo p when Accessors(p).Any(Visible):
                var accessors = string.Join(" ", Accessors(p).Where(Visible).Select(a => AccessorName(p, a)));
                var indexer = p.GetIndexParameters() is { Length: > 0 } index ? $"this[{Parameters(index)}]" : p.Name;
                var first = Accessors(p).First(Visible);
                return $"{Access(first)}{Modifiers(type, first)}{Nullable(s_nullability.Create(p), p.PropertyType)} {indexer} {{ {accessors} }}";
            case FieldInfo f when (f.IsPublic || f.IsFamily || f.IsFamilyOrAssembly) && !f.IsSpecialName:
                var constant = f.IsLiteral ? $" = {Literal(f.GetRawConstantValue())}" : "";
                var kind = f.IsLiteral ? "const " : (f.IsStatic ? "static " : "") + (f.IsInitOnly ? "readonly " : "");
                return $"{(f.IsPublic ? "public " : "protected ")}{kind}{Nullable(s_nullability.Create(f), f.FieldType)} {f.Name}{constant}";
            case EventInfo e when e.AddMethod is { } add && Visible(add):
                return $"{Access(add)}event {TypeName(e.EventHandlerType!)} {e.Name}";
            default:
                return null;
        }
    }

    private static string TypeDeclaration(Type type)
    {
        var kind = type switch
        {
            { IsInterface: true } => "interface",
            { IsEnum: true } => "enum",
            { IsValueType: true } => type.IsDefined(typeof(IsReadOnlyAttribute)) ? "readonly struct" : "struct",
            _ when typeof(Delegate).IsAssignableFrom(type) => "delegate",
            _ when type.GetMethod("<Clone>$") is not null => "record",
            { IsAbstract: true, IsSealed: true } => "static class",
            { IsAbstract: true } => "abstract class",
            { IsSealed: true } => "sealed class",
            _ => "class",
        };
        if (kind == "delegate")
        {
            var invoke = type.GetMethod("Invoke")!;
            return $"public delegate {ReturnType(invoke)} {TypeName(type)}({Parameters(invoke.GetParameters())})";
        }

        if (kind == "record" && type.IsSealed)
        {
            kind = "sealed record";
        }

        var bases = new List<string>();
        if (type.BaseType is { } b && b != typeof(object) && b != typeof(ValueType) && b != typeof(Enum))
        {
            bases.Add(TypeName(b));
        }

        if (type.IsEnum)
        {
            bases.Add(TypeName(Enum.GetUnderlyingType(type)));
        }
        else
        {
            var inherited = type.BaseType?.GetInterfaces() ?? [];
            bases.AddRange(type.GetInterfaces().Where(i => !inherited.Contains(i) && (i.IsPublic || i.IsNestedPublic)).Select(TypeName).Order(StringComparer.Ordinal));
        }

        return $"public {kind} {TypeName(type)}{(bases.Count > 0 ? " : " + string.Join(", ", bases) : "")}";
    }

    private static IEnumerable<MethodInfo> Accessors(PropertyInfo p) => new[] { p.GetMethod, p.SetMethod }.OfType<MethodInfo>();

    private static string AccessorName(PropertyInfo p, MethodInfo accessor)
    {
        var name = accessor == p.GetMethod ? "get;" : IsInit(accessor) ? "init;" : "set;";
        return Access(accessor) == Access(Accessors(p).First(Visible)) ? name : Access(accessor) + name;
    }

    private static bool IsInit(MethodInfo setter)
        => setter.ReturnParameter.GetRequiredCustomModifiers().Any(m => m.FullName == "System.Runtime.CompilerServices.IsExternalInit");

    private static bool Visible(MethodBase m) => m.IsPublic || m.IsFamily || m.IsFamilyOrAssembly;

    private static bool IsCompilerGenerated(MethodInfo m) => m.Name.Contains('<', StringComparison.Ordinal) || m.Name.Contains('$', StringComparison.Ordinal);

    private static string Access(MethodBase m) => m.IsPublic ? "public " : "protected ";

    private static string Modifiers(Type type, MethodInfo m)
    {
        if (m.IsStatic)
        {
            return "static ";
        }

        if (type.IsInterface)
        {
            return m.IsAbstract ? "" : "virtual ";
        }

        if (m.IsAbstract)
        {
            return "abstract ";
        }

        if (m.IsVirtual && !m.IsFinal)
        {
            return m.GetBaseDefinition() != m ? "override " : "virtual ";
        }

        return m.IsVirtual && m.GetBaseDefinition() != m ? "sealed override " : "";
    }

    private static string ReturnType(MethodInfo m) => Nullable(s_nullability.Create(m.ReturnParameter), m.ReturnType);

    private static string GenericArguments(MethodInfo m)
        => m.IsGenericMethodDefinition ? "<" + string.Join(", ", m.GetGenericArguments().Select(a => a.Name)) + ">" : "";

    private static string Parameters(ParameterInfo[] parameters) => string.Join(", ", parameters.Select(Parameter));

    private static string Parameter(ParameterInfo p)
    {
        var prefix = p.IsDefined(typeof(ParamArrayAttribute)) ? "params " : p.IsOut ? "out " : p.ParameterType.IsByRef ? (p.IsIn ? "in " : "ref ") : "";
        var type = p.ParameterType.IsByRef ? p.ParameterType.GetElementType()! : p.ParameterType;
        var text = $"{prefix}{Nullable(s_nullability.Create(p), type)} {p.Name}";
        return p.HasDefaultValue ? $"{text} = {Literal(p.RawDefaultValue)}" : p.IsOptional ? $"{text} = default" : text;
    }

    private static string Literal(object? value) => value switch
    {
        null => "null",
        string s => "\"" + s + "\"",
        bool b => b ? "true" : "false",
        IFormattable f => f.ToString(null, System.Globalization.CultureInfo.InvariantCulture),
        _ => value.ToString() ?? "",
    };

    /// <summary>The type's name with the nullability the compiler recorded (<c>?</c> on nullable references and values).</summary>
    private static string Nullable(NullabilityInfo info, Type type)
    {
        if (System.Nullable.GetUnderlyingType(type) is { } underlying)
        {
            return TypeName(underlying) + "?";
        }

        var name = type.IsArray && info.ElementType is { } element
            ? Nullable(element, type.GetElementType()!) + "[]"
            : type.IsGenericType && !type.IsGenericTypeDefinition && info.GenericTypeArguments.Length == type.GetGenericArguments().Length
                ? GenericName(type) + "<" + string.Join(", ", type.GetGenericArguments().Zip(info.GenericTypeArguments, (t, n) => Nullable(n, t))) + ">"
                : TypeName(type);
        return !type.IsValueType && info.ReadState == NullabilityState.Nullable ? name + "?" : name;
    }

    private static string GenericName(Type type)
    {
        var definition = type.GetGenericTypeDefinition();
        var name = definition.IsNested ? GenericName(definition.DeclaringType!) + "." + definition.Name : definition.Namespace + "." + definition.Name;
        var tick = name.IndexOf('`', StringComparison.Ordinal);
        return tick < 0 ? name : name[..tick];
    }

    private static string TypeName(Type type)
    {
        if (type.IsGenericParameter)
        {
            return type.Name;
        }

        if (type.IsArray)
        {
            return TypeName(type.GetElementType()!) + "[]";
        }

        if (System.Nullable.GetUnderlyingType(type) is { } underlying)
        {
            return TypeName(underlying) + "?";
        }

        if (type.IsGenericType)
        {
            var arguments = type.GetGenericArguments().Select(TypeName);
            return GenericName(type) + "<" + string.Join(", ", arguments) + ">";
        }

        return type.IsNested ? TypeName(type.DeclaringType!) + "." + type.Name : type.FullName ?? type.Name;
    }
}
