import Glibc

/// A regular file found under a pushed directory.
public struct SourceFile: Sendable, Equatable {
    /// Path relative to the pushed directory, `/`-separated.
    public var relativePath: String
    /// Path to open.
    public var absolutePath: String
    /// Size in bytes when it was listed.
    public var size: Int64
}

/// Lists the regular files of a directory tree for a push, refusing anything that is not a
/// regular file or directory: a symlink (it could point outside the tree), a FIFO, socket or device.
public enum FileTree {
    /// The files under `root`, sorted by relative path. If `root` is itself a regular file, it is the
    /// only entry, under its base name.
    ///
    /// - Throws: ``CairnStoreError`` with `.invalidArgument` for symlinks and special files, `.notFound`
    ///   when `root` does not exist, `.io` for unreadable directories. Nothing is returned partially.
    public static func scan(_ root: String) throws -> [SourceFile] {
        var st = stat()
        guard lstat(root, &st) == 0 else {
            if errno == ENOENT { throw CairnStoreError(.notFound, "no such file or directory: \(root)") }
            throw CairnStoreError.io("stat", path: root, errno: errno)
        }
        switch st.st_mode & S_IFMT {
        case S_IFREG:
            let name = root.split(separator: "/").last.map(String.init) ?? root
            try RelativePath.validate(name)
            return [SourceFile(relativePath: name, absolutePath: root, size: Int64(st.st_size))]
        case S_IFDIR:
            var files: [SourceFile] = []
            try walk(root, prefix: "", into: &files)
            files.sort { $0.relativePath.utf8.lexicographicallyPrecedes($1.relativePath.utf8) }
            return files
        case S_IFLNK:
            throw CairnStoreError(.invalidArgument, "\(root) is a symlink; push the directory it points to instead")
        default:
            throw CairnStoreError(.invalidArgument, "\(root) is not a regular file or directory")
        }
    }

    private static func walk(_ directory: String, prefix: String, into files: inout [SourceFile]) throws {
        guard let dir = opendir(directory) else {
            throw CairnStoreError.io("open directory", path: directory, errno: errno)
        }
        defer { closedir(dir) }
        var names: [String] = []
        while true {
            errno = 0
            guard let entry = readdir(dir) else {
                if errno != 0 { throw CairnStoreError.io("read directory", path: directory, errno: errno) }
                break
            }
            let name = withUnsafeBytes(of: entry.pointee.d_name) { raw -> String? in
                let bytes = raw.prefix { $0 != 0 }
                return String(validating: bytes, as: UTF8.self)
            }
            guard let name else {
                throw CairnStoreError(.invalidArgument, "a file name in \(directory) is not valid UTF-8")
            }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        for name in names {
            let path = directory + "/" + name
            let relative = prefix.isEmpty ? name : prefix + "/" + name
            var st = stat()
            guard lstat(path, &st) == 0 else { throw CairnStoreError.io("stat", path: path, errno: errno) }
            switch st.st_mode & S_IFMT {
            case S_IFREG:
                try RelativePath.validate(relative)
                files.append(SourceFile(relativePath: relative, absolutePath: path, size: Int64(st.st_size)))
            case S_IFDIR:
                try walk(path, prefix: relative, into: &files)
            case S_IFLNK:
                throw CairnStoreError(
                    .invalidArgument,
                    "\(relative) is a symlink; cairn stores regular files only (nothing was stored)"
                )
            default:
                throw CairnStoreError(
                    .invalidArgument,
                    "\(relative) is a special file (FIFO, socket or device); cairn stores regular files only (nothing was stored)"
                )
            }
        }
    }
}
