# frozen_string_literal: true

# The .env reader of the Vagrantfile. The format is defined once, in
# srcs/xtask/src/dotenv.rs; scripts/dotenv-test.sh holds this reader to the
# shared fixture in scripts/testdata/dotenv/, as the Rust, bash and Python ones.
# `ruby scripts/lib/dotenv.rb FILE` prints FILE resolved as KEY<TAB>VALUE lines.
module MovieDotenv
  class Error < StandardError; end

  KEY = /\A[A-Za-z_][A-Za-z0-9_]*\z/.freeze
  LINE = /\A([A-Za-z_][A-Za-z0-9_]*)=(.*)\z/m.freeze

  def self.strip_blanks(s)
    s.sub(/\A[ \t]+/, "").sub(/[ \t]+\z/, "")
  end

  def self.expand(value, values, where, key)
    out = +""
    rest = value
    while (start = rest.index("${"))
      out << rest[0, start]
      rest = rest[(start + 2)..]
      name, brace, tail = rest.partition("}")
      raise Error, "#{where}: #{key}: '${' must start a reference ${NAME}" if brace.empty? || !KEY.match?(name)
      raise Error, "#{where}: #{key}: ${#{name}} is used before it is defined" unless values.key?(name)

      out << values[name]
      rest = tail
    end
    out << rest
  end

  # Returns { KEY => value } in order of first appearance; a key in `env`
  # keeps the environment's value.
  def self.parse(text, env = {}, name = ".env")
    text = text.dup.force_encoding(Encoding::UTF_8).delete_prefix("\uFEFF")
    values = {}
    text.split("\n", -1).each_with_index do |raw, index|
      where = "#{name}:#{index + 1}"
      line = raw.delete_suffix("\r").sub(/\A[ \t]+/, "")
      next if line.empty? || line.start_with?("#")

      line = line.sub(/\Aexport[ \t]+/, "")
      match = LINE.match(line)
      raise Error, "#{where}: not a KEY=VALUE line" unless match

      key = match[1]
      value = strip_blanks(match[2])
      if value.start_with?('"', "'") && (value.length < 2 || value[-1] != value[0])
        raise Error, "#{where}: #{key}: the quote that opens the value is not closed"
      end

      if value.start_with?("'")
        value = value[1..-2]
      else
        value = value[1..-2] if value.start_with?('"')
        value = expand(value, values, where, key)
      end
      values[key] = env.key?(key) ? env[key] : value
    end
    values
  end

  def self.load(path, env = {})
    parse(File.binread(path), env, path)
  end
end

if $PROGRAM_NAME == __FILE__
  begin
    MovieDotenv.load(ARGV.fetch(0)).each { |k, v| puts "#{k}\t#{v}" }
  rescue MovieDotenv::Error, SystemCallError => e
    warn "error: #{e.message}"
    exit 1
  end
end
